"""The config file's sections as the CLI edits them: one module per section.

Each function takes the TOML document as parsed (``configstore.update_config`` reads it
under the lock, hands it over, validates the result whole and writes it back atomically)
and adds, changes or removes one entry, or refuses with an error that says what to do
instead; the ``*_rows`` functions are the entries as ``list`` and ``show`` print them.
"""
