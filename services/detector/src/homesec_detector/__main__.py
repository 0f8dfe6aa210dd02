from homesec_detector.main import main

raise SystemExit(main())
