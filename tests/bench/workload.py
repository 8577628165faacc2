"""The bench workload's orchestration (docs/benchmarks.md, "The workload"): one definition
for the bench and the measuring tools that drive parts of it in process."""

DEFINITION = """
name: bench
stages:
  - name: prepare
    steps: [{name: prepare, action: noop}]
  - name: review
    steps:
      - {name: legal, kind: interactive, title: Legal review, assignee: {user: alice}}
      - {name: finance, kind: interactive, title: Finance review, assignee: {user: bob}}
  - name: close
    steps: [{name: close, action: noop}]
"""
