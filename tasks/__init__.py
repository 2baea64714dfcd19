"""What a task is: dataset adapters, the task library, the torch Dataset over one task.

This package never imports Ray, boto3, click or `orchestrator` (a test enforces it).
"""
