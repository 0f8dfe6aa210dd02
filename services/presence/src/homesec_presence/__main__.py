from homesec_presence.main import main

raise SystemExit(main())
