from gradci.cli import main

raise SystemExit(main())
