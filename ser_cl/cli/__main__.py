from ser_cl.cli import app

app()
