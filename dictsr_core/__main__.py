from dictsr_core.cli import main

raise SystemExit(main())
