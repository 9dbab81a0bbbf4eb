"""What the studies share: :mod:`.timing`, :mod:`.memory`, :mod:`.cases` (models and
configuration), :mod:`.report` (machine description, JSON/Markdown, the study driver)
and :mod:`.plots`."""
