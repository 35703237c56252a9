from openvisit.cli import main

main()
