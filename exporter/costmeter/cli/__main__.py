import sys

from costmeter.cli.main import main

sys.exit(main())
