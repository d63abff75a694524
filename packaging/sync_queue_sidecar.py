"""PyInstaller entry script for the frozen sidecar (kept outside the package on purpose).

``sync_queue/__main__.py`` uses relative imports, which fail when PyInstaller runs it as a
top-level script ("attempted relative import with no known parent package",
pyinstaller/pyinstaller#2560). This shim imports the package absolutely and does nothing
else, so the frozen binary runs exactly the code ``python -m sync_queue`` runs.
"""

from sync_queue.__main__ import main

raise SystemExit(main())
