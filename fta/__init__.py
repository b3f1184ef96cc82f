"""File Transfer Agent: the core.

Plain Python with no Prefect import, so it is unit-tested fast and without a server. The Prefect layer lives in
``tasks/`` (thin task wrappers) and ``flows/`` (orchestration); ``blocks/`` and ``deployments/`` hold what
deployments load and how they are served.

Modules, one concern each:
    settings   the one settings model (env ``FTA_*`` > ``.env`` > defaults; the CLI overrides both)
    errors     the error tree and the single OSError -> error mapping
    stability  when a file is finished (size, mtime, inode unchanged for N seconds on an injected clock)
    scanner    recursive scan of the source: regular files only, exclude globs, never the destination
    paths      relative path -> destination path, name conflicts, temp names
    renamer    move to the final name without ever overwriting (fallback chain)
    copier     the verified copy: temp file, hash while copying, fsync, verify, rename, delete the source
    probe      is the destination reachable, and if not, why
    storage    free space of source and destination, the seed's storage status
    logsetup   console / rotating file / JSON / syslog logging
    procstat   a process's /proc stat line (state, parent, CPU ticks), split at the last ``)`` of its name
    simulator  the File Growth Simulator: files that grow like a recorder writes them
    commands   the ``fta`` commands without Prefect (check-config, simulate, the settings options); the command
               line itself is ``deployments/cli.py``, above the flows it runs
"""

__version__ = "0.1.0"
