"""GitHub at the edge: ``gradci publish`` and everything that talks to GitHub.

``context`` reads the Actions environment and event, ``client`` wraps PyGithub, ``artifacts``
finds and downloads base results, ``check_run`` and ``comment`` write to the pull request,
``workflow_commands`` writes workflow commands, step outputs and the job summary, ``rerun`` makes
base results by running the base (``gradci baseline``, without the token) and reads them back for
``publish``, which puts everything together. Nothing outside this package imports PyGithub.
"""
