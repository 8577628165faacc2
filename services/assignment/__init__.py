"""The assignment service: work items, the directory, the Work Guide."""
