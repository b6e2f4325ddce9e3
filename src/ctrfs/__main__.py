import sys

from ctrfs.cli.main import main

sys.exit(main())
