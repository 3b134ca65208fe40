from handwerk.cli.main import main

main()
