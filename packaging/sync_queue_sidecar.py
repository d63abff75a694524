"""PyInstaller entry script for the frozen sidecar (kept outside the package on purpose).

``sync_queue/__main__.py`` uses relative imports, which fail when PyInstaller runs it as a
top-level script ("attempted relative import with no known parent package",
pyinstaller/pyinstaller#2560). This shim imports the package absolutely, so the frozen binary
runs exactly the code ``python -m sync_queue`` runs. Before that, in a onefile build only,
``onefile_child.start()`` ties the Python child's life to its launcher's and sweeps the
``_MEI*`` dirs killed launchers left (see ``packaging/onefile_child.py``).
"""

import onefile_child

onefile_child.start()

from sync_queue.__main__ import main  # noqa: E402 (after the launcher watch is in place)

raise SystemExit(main())
