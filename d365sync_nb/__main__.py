import sys

from d365sync_nb.cli import main

sys.exit(main())
