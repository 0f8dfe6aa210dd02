from homesec_camera.main import main

raise SystemExit(main())
