from ddlprof.profiler.cli import main

raise SystemExit(main())
