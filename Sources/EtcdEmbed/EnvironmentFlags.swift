import Foundation

/// etcd's configuration through environment variables: `ETCD_DATA_DIR=/x` is `--data-dir=/x`.
///
/// As in etcd, a variable whose flag is also on the command line stops the start (which one
/// is meant cannot be guessed), and a variable that names no flag is reported, so a misspelt
/// setting never passes silently.
public enum EnvironmentFlags {
    /// The command line with what the environment adds, and what etcd reports about it.
    public struct Outcome: Sendable, Equatable {
        public var arguments: [String]
        /// `ETCD_*` variables that name no flag, as `KEY=value` (etcd's warning shows them so).
        public var unrecognized: [String]
        /// A variable whose flag the command line sets too: etcd refuses to start.
        public var conflicting: String?
    }

    /// The command line with the flags that only the environment sets appended.
    public static func arguments(_ commandLine: [String], environment: [String: String], knownFlags: Set<String>) -> Outcome {
        var outcome = Outcome(arguments: commandLine, unrecognized: [], conflicting: nil)
        let given = Set(commandLine.compactMap { argument -> String? in
            guard argument.hasPrefix("--") else { return nil }
            return String(argument.dropFirst(2).prefix { $0 != "=" })
        })
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix("ETCD_") {
            let flag = name.dropFirst("ETCD_".count).lowercased().replacingOccurrences(of: "_", with: "-")
            guard knownFlags.contains(flag) else {
                outcome.unrecognized.append("\(name)=\(value)")
                continue
            }
            if given.contains(flag) {
                if outcome.conflicting == nil { outcome.conflicting = name }
                continue
            }
            outcome.arguments.append("--\(flag)=\(value)")
        }
        return outcome
    }
}
