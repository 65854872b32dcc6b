"""Command lines: `flags` (every flag, with defaults read from the option dataclasses),
`common` (one-line errors, flag parsing) and one thin `main` per entry point: `train`,
`evaluate`, `track`, `export`.
"""
