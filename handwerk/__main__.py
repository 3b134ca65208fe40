from handwerk.cli import main

main()
