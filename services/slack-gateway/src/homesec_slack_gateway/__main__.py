from homesec_slack_gateway.main import main

raise SystemExit(main())
