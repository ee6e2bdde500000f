import sys

from stream_processor.runtime.cli import main

sys.exit(main())
