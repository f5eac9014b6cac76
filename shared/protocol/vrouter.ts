// vrouter agent commands (declared once; see command.ts).
export {};
