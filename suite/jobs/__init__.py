"""Batch jobs: a jaxperf run rendered as the commands and files that run it elsewhere.

`spec` holds what a job is (a JobSpec, the Cloud TPU slice table), `tpu_vm` and `batch`
render a spec into a Plan (gcloud commands for a Cloud TPU slice; an sbatch script; a
Kubernetes JobSet), `plan` prints a Plan, and `runner` executes one. Rendering is pure,
so the tests compare it with golden files; `python -m tools.tpu_job` is the command line.
"""
