"""What a workflow is and how it runs: definitions, the compiler, the plan, expressions, the interpreter."""
