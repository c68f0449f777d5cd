"""A workload from outside jaxperf's tree, as a lab would write one: model, data and glue
in three files, run with --workload=tests.toy_workload.workload:LinearDigits."""
