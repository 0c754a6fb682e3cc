from p3m.cli import main

main()
