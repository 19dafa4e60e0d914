from tinymnist.cli import main

raise SystemExit(main())
