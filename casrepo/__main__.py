from casrepo.cli import main

main()
