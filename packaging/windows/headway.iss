; Inno Setup script for Headway on Windows (per-user install: no admin rights, no UAC prompt).
;
; Build the bundle first (from the repository root, in the venv):
;   python -m PyInstaller --noconfirm --distpath dist --workpath build\pyinstaller packaging\headway.spec
; then compile this script (Inno Setup 6):
;   iscc /DAppVersion=0.1.0 packaging\windows\headway.iss
; Output: dist\Headway-<version>-setup.exe
;
; Launch at login is not set up here: Headway manages its own Run-key value ("Launch at login" in the tray menu,
; or `headway-cli autostart on`), so the installer and the app never disagree. Uninstalling removes that value.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define SourceDir "..\..\dist\Headway"

[Setup]
AppId={{6F0B7A4E-2C1D-4B8E-9F3A-5E7D1C2B4A60}
AppName=Headway
AppVersion={#AppVersion}
AppPublisher=Headway
DefaultDirName={localappdata}\Programs\Headway
DefaultGroupName=Headway
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
OutputDir=..\..\dist
OutputBaseFilename=Headway-{#AppVersion}-setup
SetupIconFile=..\..\build\pyinstaller\headway\icons\headway.ico
UninstallDisplayIcon={app}\Headway.exe
Compression=lzma2
SolidCompression=yes
WizardStyle=modern
ArchitecturesInstallIn64BitMode=x64compatible
; Headway must not run while its files are replaced.
CloseApplications=yes
RestartApplications=no

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{userprograms}\Headway"; Filename: "{app}\Headway.exe"
Name: "{userdesktop}\Headway"; Filename: "{app}\Headway.exe"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked

[Run]
Filename: "{app}\Headway.exe"; Description: "Start Headway now"; Flags: nowait postinstall skipifsilent

[UninstallRun]
; Stop starting at login (the same Run-key value the app writes), then let the uninstaller remove the files.
Filename: "{app}\headway-cli.exe"; Parameters: "autostart off"; Flags: runhidden; RunOnceId: "HeadwayAutostartOff"

[UninstallDelete]
Type: filesandordirs; Name: "{app}\_internal"
