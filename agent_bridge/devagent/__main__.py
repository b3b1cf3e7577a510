from agent_bridge.devagent.cli import main

raise SystemExit(main())
