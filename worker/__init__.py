"""The worker process: registers the interpreter workflow and the step activities on a task queue."""
