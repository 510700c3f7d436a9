import java.io.*;
import java.nio.file.*;
import java.util.*;

/** A JVM admin tool: compacts a key-value log (keeps every 10th record, under a header).
 *  `java -jar compactor.jar DIR` rewrites DIR/data.log in place; `... DIR OUT` writes the
 *  compacted log to OUT/data.log instead. */
public class Compactor {
    public static void main(String[] args) throws IOException {
        Path log = Paths.get(args[0], "data.log");
        List<String> lines = Files.readAllLines(log);
        Path out = args.length > 1 ? Paths.get(args[1], "data.log") : log;
        Files.createDirectories(out.getParent());
        try (PrintWriter w = new PrintWriter(new FileOutputStream(out.toFile()))) {
            w.println("# compacted");
            for (int i = 0; i < lines.size(); i += 10) w.println(lines.get(i));
        }
        System.out.println("compacted " + lines.size() + " records into " + out);
    }
}
