from hpcgate.cli import main

main()
