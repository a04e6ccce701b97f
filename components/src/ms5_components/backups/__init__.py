"""Backups and restore drills: logical backups taken where the server's own tools are.

- :mod:`.manifest`: the backup layout, the manifest format and the Python verifier (pure);
- :mod:`.plan`: when to back up and what retention prunes (pure);
- :mod:`.script`: the POSIX sh script that does the work inside the database's image (the same
  script for a deploy-time backup and for the scheduler container);
- :mod:`.executor`: where commands run (the database container through the Docker engine, or a
  local root file system);
- :mod:`.runner`: runs the script through an executor and checks its results;
- :mod:`.provider`: the ``Backup`` and ``RestoreDrill`` dynamic resources.
"""
