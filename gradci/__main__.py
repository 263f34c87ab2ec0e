from gradci.cli import entry

entry()
