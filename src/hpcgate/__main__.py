from hpcgate.usercli import main

main()
