"""Annotation-tool files (Label Studio, doccano, brat) read into, and written from, one tool-neutral record:
a text with character-offset spans and/or chosen labels. What a task makes of them lives in the task package."""
