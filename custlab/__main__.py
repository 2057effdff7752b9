from custlab.cli import app

app()
