"""The documentation's machinery, apart from the library: tables rendered from result files
(:mod:`.tables`, :mod:`.budgets`) and the command-line reference made from the parser (:mod:`.cli_reference`).
``import dynamicvit`` does not load it; the documentation's build hook and the tests do."""
