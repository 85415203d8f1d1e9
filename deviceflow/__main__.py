from deviceflow.cli import main

raise SystemExit(main())
