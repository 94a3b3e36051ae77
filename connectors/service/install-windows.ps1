# Vigie connector as a Windows service, with NSSM (https://nssm.cc), run as Administrator.
# Many CSS servers run Windows; this keeps the connector running across reboots and restarts
# it if it stops. Adjust the paths, then:  powershell -ExecutionPolicy Bypass -File install-windows.ps1
param(
    [string]$Vigie = "C:\Vigie\.venv\Scripts\vigie.exe",
    [string]$Config = "C:\Vigie\connector.toml",
    [string]$Logs = "C:\Vigie\logs",
    [string]$Nssm = "C:\Vigie\nssm.exe"
)
$ErrorActionPreference = "Stop"
New-Item -ItemType Directory -Force -Path $Logs | Out-Null

# 1. The checklist first: nothing is installed while a check fails.
& $Vigie connector check --config $Config
if ($LASTEXITCODE -ne 0) { throw "vigie connector check failed: fix the config first" }

# 2. The service. Passwords go in the service's environment, not in the config file.
& $Nssm install VigieConnector $Vigie connector run --config $Config --metrics-port 9464
& $Nssm set VigieConnector AppDirectory (Split-Path $Config)
& $Nssm set VigieConnector AppStdout "$Logs\connector.log"
& $Nssm set VigieConnector AppStderr "$Logs\connector.log"
& $Nssm set VigieConnector AppRotateFiles 1
& $Nssm set VigieConnector AppRotateBytes 10485760
& $Nssm set VigieConnector AppStopMethodConsole 30000   # Ctrl-C: finish the step, keep the outbox
& $Nssm set VigieConnector AppExit Default Restart
& $Nssm set VigieConnector Start SERVICE_AUTO_START
# & $Nssm set VigieConnector AppEnvironmentExtra "VIGIE_SOURCE_PASSWORD=…" "VIGIE_SASL_PASSWORD=…"
& $Nssm start VigieConnector

# Without NSSM: a scheduled task running `--once` every 5 minutes. `--once` exits 1 while
# batches stay undelivered, so the task's "Last Run Result" shows a failure.
# $action  = New-ScheduledTaskAction -Execute $Vigie -Argument "connector run --once --config $Config"
# $trigger = New-ScheduledTaskTrigger -Once -At (Get-Date) -RepetitionInterval (New-TimeSpan -Minutes 5)
# $opts    = New-ScheduledTaskSettingsSet -MultipleInstances IgnoreNew -ExecutionTimeLimit (New-TimeSpan -Minutes 30)
# Register-ScheduledTask -TaskName "VigieConnector" -Action $action -Trigger $trigger -Settings $opts `
#     -User "NT AUTHORITY\NETWORK SERVICE"
