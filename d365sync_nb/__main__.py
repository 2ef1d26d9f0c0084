import sys

from d365sync_nb.entry import main

sys.exit(main())
