from homesec_uploader.main import main

raise SystemExit(main())
