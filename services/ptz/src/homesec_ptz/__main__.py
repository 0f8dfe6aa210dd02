from homesec_ptz.main import main

raise SystemExit(main())
