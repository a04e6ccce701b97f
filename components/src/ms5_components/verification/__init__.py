"""Post-deploy verification: :mod:`.expectations` (what the migrations declare, pure),
:mod:`.checks` and :mod:`.report` (pure), :mod:`.runner` (reads the server and the monitoring HTTP
APIs), :mod:`.provider` (the ``Verification`` dynamic resource)."""
