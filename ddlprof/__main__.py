from ddlprof.cli import main

raise SystemExit(main())
