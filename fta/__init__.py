"""File Transfer Agent: the core.

Plain Python with no Prefect import, so it is unit-tested fast and without a server. The Prefect layer lives in
``tasks/`` (thin task wrappers) and ``flows/`` (orchestration); ``blocks/`` and ``deployments/`` hold what
deployments load and how they are served.

Modules, one concern each (README's Layout places them among the other packages):
    settings       the one settings model (env ``FTA_*`` > ``.env`` > defaults; the CLI overrides both)
    errors         the error tree and the single OSError -> error mapping
    scanner        recursive scan of the source: regular files only, exclude globs, never the destination
    scan_schedule  when the loop scans next: every polling interval, sooner on file events
    events         file events that wake the loop (inotify on the source's folders)
    inotify        inotify on folder handles: the watched tree, never through a symlink
    stability      when a file is finished (size, mtime, inode unchanged for N seconds on an injected clock)
    openfiles      is a file open for writing by another process (a read lease, else /proc)
    board          every tracked file and its status; the seed's status and files shapes come from it
    views          the seed's JSON shapes, computed from status rows
    scope          what a run started through the API may narrow its work to
    sourcelock     one transfer loop per source on a machine, no two on overlapping folders
    source_hold    a run's hold on its source's lock: taken before anything is touched, waited for or refused
    stop_switch    a run's stop: made by whoever owns the run's signals, handed to its loop
    handles        folder handles: every step below a root works on an open folder, never a path
    paths          relative path -> destination path, name conflicts, temp names
    checksums      xxh3 checksums of files, and the read-back that hashes a copy while it is written
    copier         the verified copy: the steps in order, one write path for both modes
    copy_job       one copy's state (CopyJob), what the write step left (Written), the result (CopyResult)
    pump           the byte loop: read, hash, write, progress, stop requests, fsync, the read-back
    copy_io        the bytes' I/O (CopyIO): the operating system's, or a test's disk
    delivered      "already delivered?": a destination file with the source's size and checksum
    stale_temps    start-up removal of this agent's stale temp files
    renamer        move to the final name without ever overwriting (fallback chain)
    probe          is the destination reachable, and if not, why (``Destination``: root, mount, marker)
    storage        free space of source and destination, the seed's storage status
    health         the Nagios verdict from what was read from the API
    metrics        Prometheus metrics of one agent process
    credential     the local Prefect server's credential
    procstat       a process's /proc stat line (state, parent, CPU ticks), split at the last ``)`` of its name
    logsetup       console / rotating file / JSON / syslog logging
    simulator      the File Growth Simulator: files that grow like a recorder writes them
    commands       the ``fta`` commands without Prefect (check-config, simulate, the settings options); the command
                   line itself is ``deployments/cli.py``, above the flows it runs
"""

__version__ = "0.1.0"
