"""The ``attnlab`` command line: entry point (:mod:`analyses.cli.main`), one module per
command (:mod:`analyses.cli.commands`) and the demo's stages (:mod:`analyses.cli.demo`).
Library code never imports this package."""
