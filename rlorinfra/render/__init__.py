"""Plan rendering: ``document`` turns a Plan into the versioned JSON document,
``text`` turns that document into Terraform-style human text.

Both are pure (no printing, no environment); the CLI decides colour and where
the text goes.
"""
