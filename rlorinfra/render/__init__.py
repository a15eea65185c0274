"""Plan rendering: ``text`` turns a plan document (``plan.document``) into Terraform-style human text.

Pure (no printing, no environment); the CLI decides colour and where the text
goes. Render reads documents only: it never imports the planner or the codec.
"""
