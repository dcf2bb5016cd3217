from sundial_scheduler.main import main

main()
