/**
 * The `uplinkd` command line: one program, one subcommand per task.
 */
import { Command } from "commander";

const program = new Command();
program.name("uplinkd").description("multi-uplink routing daemon").version("0.1.0");

await program.parseAsync(process.argv);
