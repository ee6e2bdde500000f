import sys

from stream_processor.cli import main

sys.exit(main())
